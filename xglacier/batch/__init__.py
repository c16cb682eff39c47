"""Many glaciers: the per-glacier pipeline, its configuration and the batch runner."""
