"""Model sources behind ``load_grid``: SimBench, pandapower, MATPOWER, the catalog, profiles, substations."""
