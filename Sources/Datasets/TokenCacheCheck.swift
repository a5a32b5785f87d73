import Foundation

extension TokenCache {
    /// Opens the cache at `url` against its own header: the file's length and the ids'
    /// checksum are checked, nothing about the source or tokenizer. For tools that inspect a
    /// cache file alone (and the fuzz target of the reader).
    public static func check(_ url: URL) throws -> Opened {
        let header = try readHeader(url)
        let expected = CacheExpectation(
            tokenizer: header.tokenizer, vocabularySize: header.vocabularySize,
            vocabularyFingerprint: header.vocabularyFingerprint, split: header.split,
            sourceBytes: header.source.bytes, sourceChecksum: { header.source.crc32 })
        switch try open(url, expecting: expected) {
        case .success(let opened): return opened
        case .failure(let problem): throw DataError("\(url.path): \(problem)")
        }
    }
}
