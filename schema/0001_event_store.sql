-- The event store of the Daybook application (eventsourcing's PostgreSQL application
-- recorder, application name "Daybook"). Created here so that production never relies
-- on the library creating tables at run time (CREATE_TABLE=false in the wiring).
-- Must match eventsourcing.postgres.PostgresApplicationRecorder exactly.

CREATE TYPE public.stored_event_uuid AS (
    originator_id uuid,
    originator_version bigint,
    topic text,
    state bytea
);

CREATE TABLE public.daybook_events (
    originator_id uuid NOT NULL,
    originator_version bigint NOT NULL,
    topic text,
    state bytea,
    notification_id bigserial,
    PRIMARY KEY (originator_id, originator_version)
) WITH (
    autovacuum_enabled = true,
    autovacuum_vacuum_threshold = 100000000,
    autovacuum_vacuum_scale_factor = 0.5,
    autovacuum_analyze_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.01
);

CREATE UNIQUE INDEX daybook_events_notification_id_idx
    ON public.daybook_events (notification_id ASC);
