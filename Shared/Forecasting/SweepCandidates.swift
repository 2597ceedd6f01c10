import Contracts

extension ChronologicalSplit {
    /// A dataset version's own split, under its spec's window: its validation rows are the rows every candidate of a
    /// sweep is ranked on (the same rows whatever the candidate's window or family).
    public static func ofDataset(count: Int, trainingEnd: Int, spec: ForecastSpec) throws -> ChronologicalSplit {
        try ChronologicalSplit(count: count, window: spec.window, trainingEnd: trainingEnd, fractions: spec.split)
    }
}

extension NaiveBaseline {
    /// A sweep's naive candidate on a dataset version cut as `split`: the reference lookback, shortened on a short
    /// series so that the first validation row still has a full window before it. Throws when that leaves fewer
    /// returns than `lookbacks` allows. The registry composes the job's spec from it, the trainer builds it.
    public static func candidate(on split: ChronologicalSplit) throws -> NaiveBaseline {
        try NaiveBaseline(lookback: min(defaultLookback, split.validationTargets.lowerBound - 1))
    }
}
