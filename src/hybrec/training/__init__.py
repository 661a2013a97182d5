"""The ALS training job (:func:`hybrec.training.job.run_training`), its scheduler and version publishing."""
