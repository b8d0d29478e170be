"""The search: mutations, evolution, hurdles, the cache, the run store, executors, the controller and its reports."""
