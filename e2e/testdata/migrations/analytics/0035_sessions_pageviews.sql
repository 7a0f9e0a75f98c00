-- Deploy analytics:sessions_pageviews to pg

begin;
alter table sessions rename column page_count to pageviews;
alter table sessions alter column entry_path type varchar(2048);
alter table sessions alter column entry_path drop default;
alter table visitors alter column country drop not null;
alter table visitors alter column country drop default;
commit;
