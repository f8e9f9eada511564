"""lossweep: runners."""
