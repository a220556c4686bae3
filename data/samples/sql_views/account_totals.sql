-- Per account and currency: count and sum of deposits. Only group keys and decomposable
-- aggregates: merged from the new events' partials (strategy "merge").
-- version: 1
select partition_id,
       payload->>'$.currency' as currency,
       count(*) as deposits,
       sum((payload->>'$.amount')::bigint) as deposited
from events
where type = 'deposit'
group by partition_id, payload->>'$.currency'
