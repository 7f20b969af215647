"""Models as `init(key, cfg, ...) -> params` and `apply(params, x, *, cfg, ...)` pure functions."""
