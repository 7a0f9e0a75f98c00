-- Deploy analytics:detach_page_views_2024_q1 to pg
-- Past retention: detach without blocking readers, then drop.

alter table page_views detach partition page_views_2024_q1 concurrently;

drop table page_views_2024_q1;
