import Foundation
import Tensor

/// Seeded mutations of a safetensors file for robustness tests of its readers: bit flips,
/// truncations, edits of the 8-byte header length, byte edits of the header JSON, and
/// structured edits of a tensor entry (dtype, shape, offsets) with the length kept right, so
/// that the mutated header still parses and the reader's own checks are reached.
public enum SafeTensorsMutations {
    /// One mutation of `file` (a valid safetensors file) and a short description of it.
    public static func mutate(_ file: Data, rng: inout RandomGenerator) -> (data: Data, mutation: String) {
        var data = file
        let headerLength = Int(data.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
        switch rng.integer(below: 6) {
        case 0:
            let flips = 1 + rng.integer(below: 4)
            var positions: [Int] = []
            for _ in 0..<flips {
                let bit = rng.integer(below: data.count * 8)
                data[bit / 8] ^= UInt8(1 << (bit % 8))
                positions.append(bit)
            }
            return (data, "bit flips at \(positions)")
        case 1:
            let length = rng.integer(below: data.count)
            return (data.prefix(length), "truncated to \(length) bytes")
        case 2:
            let candidates: [UInt64] = [
                0, 1, 7, UInt64(headerLength - 1), UInt64(headerLength + 1), UInt64(data.count - 8), UInt64(data.count),
                UInt64(Int.max), UInt64(Int.max) + 1, UInt64.max, rng.next(), UInt64(rng.integer(below: data.count)),
            ]
            var length = candidates[rng.integer(below: candidates.count)].littleEndian
            data.replaceSubrange(0..<8, with: Data(bytes: &length, count: 8))
            return (data, "header length \(UInt64(littleEndian: length))")
        case 3:
            let symbols = Array("{}[]\":,-.e0123456789 nulltrueF32I64U8".utf8)
            let edits = 1 + rng.integer(below: 3)
            for _ in 0..<edits { data[8 + rng.integer(below: headerLength)] = symbols[rng.integer(below: symbols.count)] }
            return (data, "\(edits) header byte edits")
        case 4:
            return structuredEdit(data, headerLength: headerLength, rng: &rng)
        default:
            let position = rng.integer(below: data.count)
            data[position] = UInt8(truncatingIfNeeded: rng.next())
            return (data, "byte \(position) replaced")
        }
    }

    /// Replaces one field of one tensor entry with an unusual value and writes the header
    /// back with its new length.
    static func structuredEdit(_ data: Data, headerLength: Int, rng: inout RandomGenerator) -> (data: Data, mutation: String) {
        guard var header = try? JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + headerLength))) as? [String: Any]
        else { return (data, "unchanged (header unreadable)") }
        let names = header.keys.filter { $0 != "__metadata__" }.sorted()
        guard let name = names.randomElementSeeded(&rng), var entry = header[name] as? [String: Any] else {
            return (data, "unchanged (no tensors)")
        }
        let numbers: [Any] = [0, -1, 1, 3, 7, Int.max, Int.min, Int.max / 2, 1 << 32, 1.5, "7", NSNull(), 1e300]
        func number() -> Any { numbers[rng.integer(below: numbers.count)] }
        let field: String
        switch rng.integer(below: 5) {
        case 0:
            field = "dtype"
            let dtypes: [Any] = ["F16", "BF16", "F64", "U8", "I32", "", 3, "F32"]
            entry["dtype"] = dtypes[rng.integer(below: dtypes.count)]
        case 1:
            field = "shape"
            entry["shape"] = (0..<rng.integer(below: 4)).map { _ in number() }
        case 2:
            field = "data_offsets"
            entry["data_offsets"] = (0..<(1 + rng.integer(below: 3))).map { _ in number() }
        case 3:
            field = "metadata"
            var metadata = header["__metadata__"] as? [String: Any] ?? [:]
            let key = metadata.keys.sorted().randomElementSeeded(&rng) ?? "format"
            metadata[key] = [number(), "", "{}", "not json", ["nested": 1]][rng.integer(below: 5)]
            header["__metadata__"] = metadata
        default:
            field = "entry"
            header[name] = number()
        }
        if field != "metadata" && field != "entry" { header[name] = entry }
        guard var json = try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]) else {
            return (data, "unchanged (edit not serialisable)")
        }
        while json.count % 8 != 0 { json.append(0x20) }
        var length = UInt64(json.count).littleEndian
        return (Data(bytes: &length, count: 8) + json + data.suffix(from: 8 + headerLength), "\(field) of \(name) edited")
    }
}

extension Array {
    /// A seeded choice (nil when empty).
    fileprivate func randomElementSeeded(_ rng: inout RandomGenerator) -> Element? {
        isEmpty ? nil : self[rng.integer(below: count)]
    }
}
