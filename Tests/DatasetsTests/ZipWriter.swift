import CZlib
import Foundation

/// Builds small ZIP archives inside tests (stored or raw-deflate members), so the reader is
/// tested on archives in the official layouts without committing any.
enum ZipWriter {
    struct Member {
        let name: String
        let bytes: [UInt8]
        let deflate: Bool
    }

    static func archive(_ members: [Member]) -> [UInt8] {
        var out: [UInt8] = []
        var central: [UInt8] = []
        for member in members {
            let crc = UInt32(member.bytes.withUnsafeBufferPointer { crc32(0, $0.baseAddress, uInt($0.count)) })
            let payload = member.deflate ? deflateRaw(member.bytes) : member.bytes
            let offset = out.count
            let name = Array(member.name.utf8)
            func header(_ signature: UInt32, central: Bool) -> [UInt8] {
                var h: [UInt8] = []
                h += le32(signature)
                if central { h += le16(20) }
                h += le16(20) + le16(0) + le16(member.deflate ? 8 : 0) + le16(0) + le16(0)
                h += le32(crc) + le32(UInt32(payload.count)) + le32(UInt32(member.bytes.count))
                h += le16(UInt16(name.count)) + le16(0)
                if central { h += le16(0) + le16(0) + le16(0) + le32(0) + le32(UInt32(offset)) }
                return h + name
            }
            out += header(0x0403_4b50, central: false) + payload
            central += header(0x0201_4b50, central: true)
        }
        let directoryOffset = out.count
        out += central
        out += le32(0x0605_4b50) + le16(0) + le16(0) + le16(UInt16(members.count)) + le16(UInt16(members.count))
        out += le32(UInt32(central.count)) + le32(UInt32(directoryOffset)) + le16(0)
        return out
    }

    static func deflateRaw(_ input: [UInt8]) -> [UInt8] {
        var stream = z_stream()
        deflateInit2_(&stream, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size))
        defer { deflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(input.count))) + 64)
        var source = input
        let produced = source.withUnsafeMutableBufferPointer { src in
            output.withUnsafeMutableBufferPointer { dst -> Int in
                stream.next_in = src.baseAddress
                stream.avail_in = uInt(src.count)
                stream.next_out = dst.baseAddress
                stream.avail_out = uInt(dst.count)
                deflate(&stream, Z_FINISH)
                return dst.count - Int(stream.avail_out)
            }
        }
        return Array(output.prefix(produced))
    }

    static func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xff), UInt8(v >> 8)] }
    static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xff) } }
}
