-- Per account and event type: how many, the median amount and the latest event time.
-- The median needs every amount, so this view is recomputed for the accounts a batch touches
-- (`eventlake views` shows "recompute-touched"); see README "Views in SQL".
-- version: 1
select partition_id,
       type,
       count(*) as n,
       median((payload->>'$.amount')::bigint) as median_amount,
       max(ts) as last_at
from events
where type in ('deposit', 'withdrawal')
group by partition_id, type
