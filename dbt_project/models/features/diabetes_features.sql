-- The table the diabetes model trains on: one row per patient, the measurements plus two engineered features.
-- Plain SQL that runs unchanged on DuckDB and PostgreSQL.
select
    patient_id,
    snapshot_hash,
    batch_id,
    age,
    sex,
    bmi,
    bp,
    s1,
    s2,
    s3,
    s4,
    s5,
    s6,
    bmi * bp / 100.0 as bmi_x_bp,
    -- s5 (log of serum triglycerides) relative to s4 (total cholesterol / HDL).
    s5 / greatest(s4, 0.1) as s5_to_s4,
    progression
from {{ ref('stg_diabetes_batches') }}
