"""Attribution workers: embed inference outputs in micro-batches, search the catalog
index, and turn matches into shares with evidence. CUDA with fp16 when present, CPU
otherwise, same code."""
