//! The watcher Lambda: reads the three stage jobs from Batch and says whether the run is done.
