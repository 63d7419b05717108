"""The hybrid model as a whole: the bundle (SNN + accumulator interval + ANN), the accumulator
(stage 3) and the per-window pipeline that chains the stages."""
