import Foundation

/// The UTC calendar day of a unix time, `2024-01-01`: how candle open times are shown to people.
public func utcDay(_ unixSeconds: Int64) -> String {
    Date(timeIntervalSince1970: Double(unixSeconds)).formatted(utcDayStyle)
}

/// A value type, so one instance serves every call (the dashboard formats one per point).
private let utcDayStyle = Date.ISO8601FormatStyle(timeZone: .gmt).year().month().day()
