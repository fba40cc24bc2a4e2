"""nbautodiff as a GradBench tool: one module per eval, the protocol loop in ``protocol``."""
