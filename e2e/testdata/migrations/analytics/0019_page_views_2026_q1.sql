-- Deploy analytics:page_views_2026_q1 to pg
-- requires: page_views

begin;

create table page_views_2026_q1 (like page_views including defaults including constraints);

alter table page_views_2026_q1
    add constraint page_views_2026_q1_bounds
    check (viewed_on >= date '2026-01-01' and viewed_on < date '2026-04-01');

alter table page_views attach partition page_views_2026_q1
    for values from ('2026-01-01') to ('2026-04-01');

alter table page_views_2026_q1 drop constraint page_views_2026_q1_bounds;

commit;
