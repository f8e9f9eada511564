"""lossweep: study."""
