insert into goals (site_id, name, match_type, pattern, created_at)
select (g % 100) + 1,
       'goal ' || g,
       case when g % 2 = 0 then 'path' else 'event' end,
       case when g % 2 = 0 then '/thank-you/' || g else 'signup' end,
       now() - g * interval '1 day'
from generate_series(1, 150) as g;

insert into goal_conversions (goal_id, visitor_id, converted_at, revenue_cents)
select (g % 150) + 1,
       (g % 400) + 1,
       now() - g * interval '30 minutes',
       case when g % 4 = 0 then (g * 113) % 50000 end
from generate_series(1, 400) as g;
