-- runner: transaction
-- Deploy analytics:page_views_indexes to pg

create index page_views_site_id_viewed_on_idx on page_views (site_id, viewed_on);
create index page_views_visitor_id_idx on page_views (visitor_id) where visitor_id is not null;
