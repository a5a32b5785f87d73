/// A problem with input data that the user can fix; the message is one line naming the file
/// and what to do.
public struct DataError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
