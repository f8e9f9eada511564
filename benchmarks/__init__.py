"""lossweep: benchmarks."""
