-- Which insert stored an event: one random id per recorder insert, on each of its events.
-- The eventsourcing library retries an insert after a dropped connection; when the first
-- attempt had committed, the retry fails on the unique (stream, version) key. The recorder
-- then reads these ids back to tell "my own commit, acknowledgement lost" from a version
-- conflict (adapters/event_store.py). Nullable: events stored before this are NULL, and
-- adding the column rewrites nothing.
ALTER TABLE public.daybook_events ADD COLUMN batch_id uuid;
