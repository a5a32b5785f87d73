import Foundation

/// A problem with formal-language data that the user can fix, as one line; a file problem names
/// the file, the 1-based line and the 1-based position (symbol) in it.
public struct FormalDataError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String

    public init(_ description: String) { self.description = description }

    static func at(_ file: URL, line: Int, position: Int, _ problem: String) -> FormalDataError {
        FormalDataError("\(file.path): line \(line), position \(position): \(problem)")
    }
}
