import Datasets

/// Token cache files are guarded by two CRC-32s, which random mutations almost never keep
/// right: without help a fuzzer would only ever test the checksum comparison. For inputs of
/// odd length (half of them) both checksums are recomputed after mutation, so the fields
/// behind them are reached too.
enum TokenCacheSeal {
    static func seal(_ bytes: [UInt8]) -> [UInt8] {
        let size = TokenCacheHeader.size
        guard bytes.count >= size, bytes.count % 2 == 1 else { return bytes }
        var sealed = bytes
        func put(_ value: UInt32, at offset: Int) {
            for i in 0..<4 { sealed[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
        }
        put(sealed.withUnsafeBytes { CRC32.of(UnsafeRawBufferPointer(rebasing: $0[size...])) }, at: 60)
        put(sealed.withUnsafeBytes { CRC32.of(UnsafeRawBufferPointer(rebasing: $0[0..<252])) }, at: 252)
        return sealed
    }
}
