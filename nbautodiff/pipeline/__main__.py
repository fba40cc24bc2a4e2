"""``python -m nbautodiff.pipeline``: print the pipelines of passes each artifact goes through."""
from nbautodiff.pipeline.passes import describe

print(describe())
