-- The table the model trains on: one row per customer, the contract's feature columns as they
-- arrived plus engineered ratios. Plain SQL that runs unchanged on DuckDB and PostgreSQL.
select
    customer_id,
    event_date,
    snapshot_hash,
    batch_id,
    tenure_months,
    monthly_charges,
    total_charges,
    contract,
    payment_method,
    internet_service,
    support_calls,
    num_products,
    senior_citizen,
    region,
    -- Explicit double precision: PostgreSQL divides integers as integers, DuckDB does not.
    cast(total_charges as double precision) / greatest(tenure_months, 1) as avg_charge_per_month,
    cast(monthly_charges as double precision) / greatest(num_products, 1) as charges_to_products,
    cast(case when tenure_months < 6 then 1 else 0 end as integer) as is_new_customer,
    cast(support_calls as double precision) * 12 / greatest(tenure_months, 1) as calls_per_tenure_year,
    cast(case when contract = 'month-to-month' then 1 else 0 end as integer) as is_month_to_month,
    cast(case when internet_service = 'fiber' then 1 else 0 end as integer) as has_fiber,
    churned
from {{ ref('stg_churn_batches') }}
