"""The flow engine: pandapower case → power-grid-model, batched solves, hosting-capacity search."""
