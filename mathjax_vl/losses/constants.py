"""Constants every label producer and consumer shares (data pipelines, tasks, losses)."""

# Label value at positions that take no loss (prompt, padding, image placeholders); the value
# HF / PyTorch cross-entropy ignores, so labels stay interchangeable with transformers'.
IGNORE_INDEX = -100
