-- runner: transaction
-- Deploy analytics:page_views_utm_source to pg

alter table page_views add column utm_source varchar(64);
alter table page_views add column utm_campaign varchar(64);

drop index page_views_visitor_id_idx;
create index page_views_visitor_id_viewed_on_idx on page_views (visitor_id, viewed_on) where visitor_id is not null;
