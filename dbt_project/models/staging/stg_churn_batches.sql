-- Validated raw batches with stable types and clean categories. If a batch was ingested more than
-- once, only its latest copy of each customer is kept.
with typed as (
    select
        cast(customer_id as varchar) as customer_id,
        cast(event_date as date) as event_date,
        cast(tenure_months as integer) as tenure_months,
        cast(monthly_charges as double precision) as monthly_charges,
        -- A bill not yet recorded is estimated from what the customer pays and for how long.
        cast(coalesce(total_charges, monthly_charges * tenure_months) as double precision) as total_charges,
        cast(lower(trim(contract)) as varchar) as contract,
        cast(lower(trim(payment_method)) as varchar) as payment_method,
        cast(lower(trim(internet_service)) as varchar) as internet_service,
        cast(support_calls as integer) as support_calls,
        cast(num_products as integer) as num_products,
        cast(senior_citizen as boolean) as senior_citizen,
        cast(lower(trim(region)) as varchar) as region,
        cast(churned as integer) as churned,
        cast(_snapshot_hash as varchar) as snapshot_hash,
        cast(_batch_id as varchar) as batch_id,
        cast(_ingested_at as timestamp) as ingested_at
    from {{ source('raw', 'churn_batches') }}
),

ranked as (
    select
        typed.*,
        row_number() over (partition by customer_id order by ingested_at desc, batch_id desc) as copy_rank
    from typed
)

select
    customer_id,
    event_date,
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
    churned,
    snapshot_hash,
    batch_id,
    ingested_at
from ranked
where copy_rank = 1
