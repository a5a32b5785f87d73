import Configuration
import Datasets
import Foundation

/// The safetensors file format (huggingface/safetensors): an 8-byte little-endian header
/// length, a JSON header `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__":
/// {string: string}}` padded with spaces to a multiple of 8, then the raw little-endian data.
public enum SafeTensors {
    public enum DType: String, Sendable {
        case f32 = "F32", f64 = "F64", i32 = "I32", i64 = "I64", u64 = "U64", u8 = "U8"
        public var size: Int {
            switch self {
            case .f32, .i32: 4
            case .f64, .i64, .u64: 8
            case .u8: 1
            }
        }
    }

    /// One tensor to write: its bytes are produced by `write` into a buffer of `byteCount`.
    public struct Entry {
        public let name: String
        public let dtype: DType
        public let shape: [Int]
        public let bytes: UnsafeRawBufferPointer

        public init(name: String, dtype: DType, shape: [Int], bytes: UnsafeRawBufferPointer) {
            precondition(bytes.count == shape.reduce(1, *) * dtype.size, "size mismatch for \(name)")
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.bytes = bytes
        }
    }

    /// The metadata key of the per-tensor checksums: a JSON object (as a string, since
    /// safetensors metadata holds strings only) from each tensor's name to the CRC-32 of its
    /// bytes as stored, in 8 lowercase hex digits. Written with every file, checked on every read.
    public static let checksumKey = "tensor_crc32"

    /// Writes `entries` and `metadata` to `url` atomically (temporary file, then rename), with
    /// the CRC-32 of every tensor under `checksumKey`.
    public static func write(_ entries: [Entry], metadata: [String: String], to url: URL) throws {
        var metadata = metadata
        metadata[checksumKey] = try checksumTable(entries.map { ($0.name, CRC32.of($0.bytes)) })
        var header: [String: Any] = ["__metadata__": metadata]
        var offset = 0
        for entry in entries {
            header[entry.name] = [
                "dtype": entry.dtype.rawValue, "shape": entry.shape,
                "data_offsets": [offset, offset + entry.bytes.count],
            ]
            offset += entry.bytes.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var length = UInt64(json.count).littleEndian
        let folder = url.deletingLastPathComponent()
        try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let temporary = AtomicFile.temporaryURL(for: url)
        guard FileManager.default.createFile(atPath: temporary.path, contents: nil),
            let handle = FileHandle(forWritingAtPath: temporary.path)
        else {
            throw DataError("\(url.path): cannot write in \(folder.path); choose a writable location")
        }
        do {
            try handle.write(contentsOf: Data(bytes: &length, count: 8))
            try handle.write(contentsOf: json)
            for entry in entries where entry.bytes.count > 0 {
                try handle.write(contentsOf: Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: entry.bytes.baseAddress!), count: entry.bytes.count, deallocator: .none))
            }
            try handle.synchronize()
            try handle.close()
        } catch {
            try? handle.close()
            try? FileManager.default.removeItem(at: temporary)
            throw DataError("\(url.path): writing failed (\(error.localizedDescription)); check free space")
        }
        try AtomicFile.commit(temporary, to: url)
    }

    /// The `checksumKey` value: `{"name": "1a2b3c4d", ...}` with sorted keys.
    static func checksumTable(_ checksums: [(name: String, crc: UInt32)]) throws -> String {
        let hex = Dictionary(checksums.map { ($0.name, String(format: "%08x", $0.crc)) }) { _, last in last }
        let json = try JSONSerialization.data(withJSONObject: hex, options: [.sortedKeys])
        return String(decoding: json, as: UTF8.self)
    }

    /// The header of the safetensors file at `url` (tensor entries and `__metadata__`), read
    /// without its data; nil when the file is missing or not a safetensors file.
    public static func header(of url: URL) -> [String: Any]? {
        guard let handle = FileHandle(forReadingAtPath: url.path) else { return nil }
        defer { try? handle.close() }
        guard let size = try? handle.seekToEnd(), (try? handle.seek(toOffset: 0)) != nil,
            let prefix = try? handle.read(upToCount: 8), prefix.count == 8
        else { return nil }
        let declared = prefix.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard declared > 0, declared <= size - 8, declared <= 1 << 30,
            let json = try? handle.read(upToCount: Int(declared)), json.count == Int(declared)
        else { return nil }
        return (try? JSONSerialization.jsonObject(with: json)) as? [String: Any]
    }

    /// A safetensors file read into memory. Reading checks the header against the file's size
    /// and every tensor's dtype, shape and offsets against the data, so no byte string makes
    /// it trap, and verifies the tensors' checksums when the file carries them.
    public final class File {
        public struct Tensor {
            public let name: String
            public let dtype: DType
            public let shape: [Int]
            let range: Range<Int>
        }

        public let url: URL
        public let metadata: [String: String]
        public let tensors: [String: Tensor]
        /// The file carried per-tensor checksums (all verified); false for files written by
        /// earlier versions of lmtrain or by other programs.
        public let hasChecksums: Bool
        private let data: Data

        public convenience init(url: URL) throws {
            guard let data = FileManager.default.contents(atPath: url.path) else {
                throw DataError("\(url.path): cannot read the file (missing or unreadable)")
            }
            try self.init(data: data, url: url)
        }

        /// Parses `data`, the contents of `url` (named in every error).
        public init(data: Data, url: URL) throws {
            self.url = url
            self.data = data
            func corrupt(_ why: String) -> DataError {
                DataError("\(url.path): not a valid safetensors file (\(why)); the file is damaged or not a checkpoint")
            }
            guard data.count >= 8 else { throw corrupt("shorter than its 8-byte header length") }
            // The length is checked as the unsigned number it is before it becomes an Int.
            let declared = data.prefix(8).withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
            guard declared > 0, declared <= UInt64(data.count - 8) else {
                throw corrupt("header length \(declared) does not fit in the file's \(data.count) bytes")
            }
            let dataStart = 8 + Int(declared)
            let dataLength = data.count - dataStart
            let headerBytes = data.subdata(in: 8..<dataStart)
            guard let header = (try? JSONSerialization.jsonObject(with: headerBytes)) as? [String: Any] else {
                throw corrupt("header is not a JSON object")
            }
            var metadata: [String: String] = [:]
            if let value = header["__metadata__"] {
                guard let strings = value as? [String: String] else { throw corrupt("__metadata__ must map strings to strings") }
                metadata = strings
            }
            self.metadata = metadata
            var tensors: [String: Tensor] = [:]
            for (name, value) in header where name != "__metadata__" {
                tensors[name] = try Self.tensor(name, value, dataStart: dataStart, dataLength: dataLength, corrupt: corrupt)
            }
            self.tensors = tensors
            hasChecksums = metadata[SafeTensors.checksumKey] != nil
            if let table = metadata[SafeTensors.checksumKey] { try verify(table, corrupt: corrupt) }
        }

        /// One header entry, checked: a known dtype, non-negative dimensions whose byte count
        /// does not overflow, and offsets inside the data that span exactly that many bytes.
        private static func tensor(
            _ name: String, _ value: Any, dataStart: Int, dataLength: Int, corrupt: (String) -> DataError
        ) throws -> Tensor {
            guard let entry = value as? [String: Any], let dtypeName = entry["dtype"] as? String,
                let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int], offsets.count == 2
            else { throw corrupt("bad entry for \(name): needs dtype, shape and two data_offsets") }
            guard let dtype = DType(rawValue: dtypeName) else {
                throw corrupt("tensor \(name) has dtype \(dtypeName); lmtrain reads \([DType.f32, .f64, .i32, .i64, .u64, .u8].map(\.rawValue).joined(separator: ", "))")
            }
            var byteCount = dtype.size
            for dimension in shape {
                guard dimension >= 0 else { throw corrupt("tensor \(name) has a negative dimension in shape \(shape)") }
                let (product, overflow) = byteCount.multipliedReportingOverflow(by: dimension)
                guard !overflow, product <= dataLength else {
                    throw corrupt("tensor \(name) of shape \(shape) is larger than the file (truncated?)")
                }
                byteCount = product
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, begin <= end, end <= dataLength else {
                throw corrupt("tensor \(name) lies outside the file (data_offsets \(offsets), \(dataLength) data bytes; truncated?)")
            }
            guard end - begin == byteCount else {
                throw corrupt("tensor \(name): data_offsets \(offsets) span \(end - begin) bytes, its dtype and shape need \(byteCount)")
            }
            return Tensor(name: name, dtype: dtype, shape: shape, range: (dataStart + begin)..<(dataStart + end))
        }

        /// Checks every tensor against the checksum table `table` (the `checksumKey` value).
        private func verify(_ table: String, corrupt: (String) -> DataError) throws {
            guard let stored = (try? JSONSerialization.jsonObject(with: Data(table.utf8))) as? [String: String] else {
                throw corrupt("the \(SafeTensors.checksumKey) metadata is not a JSON object of strings")
            }
            if let extra = stored.keys.sorted().first(where: { tensors[$0] == nil }) {
                throw corrupt("\(SafeTensors.checksumKey) names tensor \(extra), which the file lacks")
            }
            try data.withUnsafeBytes { raw in
                for name in tensors.keys.sorted() {
                    guard let hex = stored[name], hex.count == 8, let expected = UInt32(hex, radix: 16) else {
                        throw corrupt("\(SafeTensors.checksumKey) has no valid checksum for tensor \(name)")
                    }
                    let range = tensors[name]!.range
                    let actual = CRC32.of(UnsafeRawBufferPointer(rebasing: raw[range]))
                    guard actual == expected else {
                        throw DataError("\(url.path): tensor \(name) fails its CRC-32 check (stored \(hex), computed \(String(format: "%08x", actual))): the file is damaged; use another checkpoint")
                    }
                }
            }
        }

        /// Copies tensor `name` (of `dtype` and `shape`) into `destination`.
        public func read<T>(_ name: String, dtype: DType, shape: [Int]? = nil, into destination: UnsafeMutablePointer<T>) throws {
            guard let tensor = tensors[name] else { throw DataError("\(url.path): has no tensor \(name)") }
            guard tensor.dtype == dtype else { throw DataError("\(url.path): tensor \(name) is \(tensor.dtype.rawValue), expected \(dtype.rawValue)") }
            if let shape, shape != tensor.shape {
                throw DataError("\(url.path): tensor \(name) has shape \(tensor.shape), expected \(shape) (a checkpoint from another config?)")
            }
            guard !tensor.range.isEmpty else { return }
            data.withUnsafeBytes { raw in
                UnsafeMutableRawPointer(destination).copyMemory(from: raw.baseAddress! + tensor.range.lowerBound, byteCount: tensor.range.count)
            }
        }

        /// Tensor `name` as an array.
        public func array<T>(_ name: String, dtype: DType, as type: T.Type) throws -> [T] where T: Numeric {
            guard let tensor = tensors[name] else { throw DataError("\(url.path): has no tensor \(name)") }
            precondition(MemoryLayout<T>.size == dtype.size, "\(T.self) does not hold \(dtype.rawValue)")
            var values = [T](repeating: 0, count: tensor.shape.reduce(1, *))
            try values.withUnsafeMutableBufferPointer { try read(name, dtype: dtype, into: $0.baseAddress!) }
            return values
        }
    }
}
