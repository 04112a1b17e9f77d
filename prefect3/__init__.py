"""The Prefect 3 edition: the same QC flows on current Prefect (see README, "Prefect 3 edition")."""
