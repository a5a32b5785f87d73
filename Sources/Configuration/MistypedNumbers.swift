import Foundation

extension ConfigResolution {
    /// "model.d_model must be an integer (got 64.5)" for the number of `object` that an
    /// integer field cannot hold, or nil. Foundation's decoder reports such a number only as
    /// "not valid JSON" with no key; each suspect (a fraction, a negative number, one beyond
    /// 64 bits) is replaced by a string in turn, which makes the decoder name its field and type.
    static func mistypedNumber(in object: Object) -> String? {
        for (path, number) in suspectNumbers(object, path: []) {
            let probe = replacing(path, in: object, with: "?")
            guard let data = try? JSONSerialization.data(withJSONObject: probe) else { continue }
            do {
                _ = try JSONDecoder().decode(RunConfig.self, from: data)
            } catch let DecodingError.typeMismatch(type, context) where context.codingPath.map(\.stringValue) == path {
                let field = path.joined(separator: ".")
                if type is Int.Type, Int(exactly: number) == nil {
                    return "\(field) must be an integer (got \(text(number)))"
                }
                if type is UInt64.Type, UInt64(exactly: number) == nil {
                    return "\(field) must be a non-negative integer (got \(text(number)))"
                }
            } catch {}
        }
        return nil
    }

    /// -1 rather than -1.0 where the number is a whole one.
    private static func text(_ number: Double) -> String {
        if let whole = Int(exactly: number) { "\(whole)" } else { "\(number)" }
    }

    /// Numbers that some integer field could not hold, with their key paths.
    private static func suspectNumbers(_ value: Any, path: [String]) -> [([String], Double)] {
        switch value {
        case let object as Object:
            object.sorted { $0.key < $1.key }.flatMap { suspectNumbers($0.value, path: path + [$0.key]) }
        case let array as [Any]:
            array.enumerated().flatMap { suspectNumbers($0.element, path: path + ["\($0.offset)"]) }
        case is Bool, is String:
            []
        case let number as Double where number != number.rounded() || number < 0 || number.magnitude >= 0x1p63:
            [(path, number)]
        case let number as Int where number < 0:
            [(path, Double(number))]
        default:
            []
        }
    }

    /// `object` with the value at `path` replaced.
    private static func replacing(_ path: [String], in value: Any, with replacement: Any) -> Any {
        guard let key = path.first else { return replacement }
        if var object = value as? Object, let child = object[key] {
            object[key] = replacing(Array(path.dropFirst()), in: child, with: replacement)
            return object
        }
        if var array = value as? [Any], let index = Int(key), array.indices.contains(index) {
            array[index] = replacing(Array(path.dropFirst()), in: array[index], with: replacement)
            return array
        }
        return value
    }
}

extension ConfigResolution {
    /// Why JSONSerialization refused `text`, for the end of a "not valid JSON" line: Foundation's
    /// reason, and for a number beyond Double's range (`1e999`, which JSON allows but no
    /// config field can hold) the key it belongs to.
    static func parseFailure(_ error: any Error, text: Data) -> String {
        guard let reason = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String else { return "" }
        let prefix = "Number ", suffix = " is not representable"
        guard reason.hasPrefix(prefix), let end = reason.range(of: suffix) else { return " (\(reason))" }
        let number = String(reason[reason.index(reason.startIndex, offsetBy: prefix.count)..<end.lowerBound])
        let source = String(decoding: text, as: UTF8.self)
        // The key is the last string before the number followed by a colon.
        guard let at = source.range(of: number),
            let key = source[..<at.lowerBound].split(separator: "\"", omittingEmptySubsequences: false).dropLast().last
        else { return ": the number \(number) is beyond the range of a number" }
        return ": '\(key)' holds \(number), beyond the range of a number"
    }
}
