-- Validated raw batches of the diabetes example, typed. If a patient arrived in more than one batch, only the
-- latest copy is kept.
with typed as (
    select
        cast(patient_id as varchar) as patient_id,
        cast(age as integer) as age,
        cast(sex as integer) as sex,
        cast(bmi as double precision) as bmi,
        cast(bp as double precision) as bp,
        cast(s1 as double precision) as s1,
        cast(s2 as double precision) as s2,
        cast(s3 as double precision) as s3,
        cast(s4 as double precision) as s4,
        cast(s5 as double precision) as s5,
        cast(s6 as double precision) as s6,
        cast(progression as double precision) as progression,
        cast(_snapshot_hash as varchar) as snapshot_hash,
        cast(_batch_id as varchar) as batch_id,
        cast(_ingested_at as timestamp) as ingested_at
    from {{ source('raw', 'diabetes_batches') }}
),

ranked as (
    select
        typed.*,
        row_number() over (partition by patient_id order by ingested_at desc, batch_id desc) as copy_rank
    from typed
)

select
    patient_id, age, sex, bmi, bp, s1, s2, s3, s4, s5, s6, progression, snapshot_hash, batch_id, ingested_at
from ranked
where copy_rank = 1
