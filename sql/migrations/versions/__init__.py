"""Schema revisions, applied in order by `parkcast.db.migrate`."""
