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

    /// Writes `entries` and `metadata` to `url` atomically (temporary file, then rename).
    public static func write(_ entries: [Entry], metadata: [String: String], to url: URL) throws {
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

    /// A safetensors file read into memory.
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
        private let data: Data
        private let dataStart: Int

        public init(url: URL) throws {
            self.url = url
            guard let data = FileManager.default.contents(atPath: url.path) else {
                throw DataError("\(url.path): cannot read the file (missing or unreadable)")
            }
            self.data = data
            func corrupt(_ why: String) -> DataError {
                DataError("\(url.path): not a valid safetensors file (\(why))")
            }
            guard data.count >= 8 else { throw corrupt("shorter than its 8-byte header length") }
            let headerLength = data.prefix(8).withUnsafeBytes { Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
            guard headerLength > 0, headerLength <= data.count - 8 else { throw corrupt("header length \(headerLength) exceeds the file") }
            dataStart = 8 + headerLength
            guard let header = try? JSONSerialization.jsonObject(with: data.subdata(in: 8..<dataStart)) as? [String: Any] else {
                throw corrupt("header is not a JSON object")
            }
            metadata = header["__metadata__"] as? [String: String] ?? [:]
            var tensors: [String: Tensor] = [:]
            for (name, value) in header where name != "__metadata__" {
                guard let entry = value as? [String: Any],
                    let dtypeName = entry["dtype"] as? String, let dtype = DType(rawValue: dtypeName),
                    let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int],
                    offsets.count == 2, offsets[0] <= offsets[1]
                else { throw corrupt("bad entry for \(name)") }
                guard offsets[1] - offsets[0] == shape.reduce(1, *) * dtype.size,
                    dataStart + offsets[1] <= data.count
                else { throw corrupt("tensor \(name) lies outside the file (truncated?)") }
                tensors[name] = Tensor(name: name, dtype: dtype, shape: shape, range: (dataStart + offsets[0])..<(dataStart + offsets[1]))
            }
            self.tensors = tensors
        }

        /// Copies tensor `name` (of `dtype` and `shape`) into `destination`.
        public func read<T>(_ name: String, dtype: DType, shape: [Int]? = nil, into destination: UnsafeMutablePointer<T>) throws {
            guard let tensor = tensors[name] else { throw DataError("\(url.path): has no tensor \(name)") }
            guard tensor.dtype == dtype else { throw DataError("\(url.path): tensor \(name) is \(tensor.dtype.rawValue), expected \(dtype.rawValue)") }
            if let shape, shape != tensor.shape {
                throw DataError("\(url.path): tensor \(name) has shape \(tensor.shape), expected \(shape) (a checkpoint from another config?)")
            }
            data.withUnsafeBytes { raw in
                UnsafeMutableRawPointer(destination).copyMemory(from: raw.baseAddress! + tensor.range.lowerBound, byteCount: tensor.range.count)
            }
        }

        /// Tensor `name` as an array.
        public func array<T>(_ name: String, dtype: DType, as type: T.Type) throws -> [T] where T: Numeric {
            guard let tensor = tensors[name] else { throw DataError("\(url.path): has no tensor \(name)") }
            var values = [T](repeating: 0, count: tensor.shape.reduce(1, *))
            try values.withUnsafeMutableBufferPointer { try read(name, dtype: dtype, into: $0.baseAddress!) }
            return values
        }
    }
}
