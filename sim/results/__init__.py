"""Results files (torch-free): schema, store, reader, experiment identity, the run-folder layout."""
