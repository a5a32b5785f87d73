// Byte-level text helpers shared by the tokenizers: UTF-8 validation, line splitting,
// chunked file reading, atomic file writes and the one parallel loop of this target.

import Dispatch
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// UTF-8 validation that reports where the text goes wrong.
public enum UTF8Validation {
    /// The offset of the first byte of the first ill-formed sequence, or nil when `bytes` is
    /// well-formed UTF-8 (Unicode Table 3-7: no overlong forms, no surrogates, nothing above
    /// U+10FFFF).
    public static func firstInvalidOffset(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        guard let base = bytes.baseAddress else { return nil }
        let count = bytes.count
        var i = 0
        while i < count {
            // Skip ASCII eight bytes at a time: most corpus text is ASCII.
            while i + 8 <= count {
                let word = UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self)
                if word & 0x8080_8080_8080_8080 != 0 { break }
                i += 8
            }
            if i >= count { break }
            let lead = base[i]
            if lead < 0x80 {
                i += 1
                continue
            }
            func continuation(_ k: Int, _ low: UInt8 = 0x80, _ high: UInt8 = 0xBF) -> Bool {
                i + k < count && base[i + k] >= low && base[i + k] <= high
            }
            switch lead {
            case 0xC2...0xDF:
                guard continuation(1) else { return i }
                i += 2
            case 0xE0:
                guard continuation(1, 0xA0), continuation(2) else { return i }
                i += 3
            case 0xE1...0xEC, 0xEE...0xEF:
                guard continuation(1), continuation(2) else { return i }
                i += 3
            case 0xED:
                guard continuation(1, 0x80, 0x9F), continuation(2) else { return i }
                i += 3
            case 0xF0:
                guard continuation(1, 0x90), continuation(2), continuation(3) else { return i }
                i += 4
            case 0xF1...0xF3:
                guard continuation(1), continuation(2), continuation(3) else { return i }
                i += 4
            case 0xF4:
                guard continuation(1, 0x80, 0x8F), continuation(2), continuation(3) else {
                    return i
                }
                i += 4
            default:
                return i
            }
        }
        return nil
    }

    /// Throws ``TokenizerError/invalidUTF8(file:line:byteOffset:)`` when `bytes` is not UTF-8.
    static func validate(_ bytes: UnsafeBufferPointer<UInt8>) throws {
        if let offset = firstInvalidOffset(bytes) {
            throw TokenizerError.invalidUTF8(file: nil, line: nil, byteOffset: offset)
        }
    }
}

/// Line handling for LF-terminated text: a line ends at LF, a CR right before the LF is
/// dropped, and a final line without LF counts only when it is non-empty (so a file of N
/// LF-terminated lines has N lines, as Python's `for line in file` counts them).
public enum TextLines {
    /// Calls `body(index, line)` for each line of `text` (index 0-based, line without terminator).
    public static func forEachLine(
        in text: UnsafeBufferPointer<UInt8>,
        _ body: (_ index: Int, _ line: UnsafeBufferPointer<UInt8>) throws -> Void
    ) rethrows {
        guard let base = text.baseAddress else { return }
        var start = 0
        var index = 0
        let count = text.count
        while start < count {
            let remaining = count - start
            let found = memchr(base + start, 0x0A, remaining)
            let end =
                found.map { UnsafePointer<UInt8>($0.assumingMemoryBound(to: UInt8.self)) - base }
                ?? count
            var lineEnd = end
            if lineEnd > start && base[lineEnd - 1] == 0x0D { lineEnd -= 1 }
            try body(index, UnsafeBufferPointer(start: base + start, count: lineEnd - start))
            index += 1
            start = end + 1
        }
    }

    /// Number of lines ``forEachLine(in:_:)`` would visit.
    public static func countLines(in text: UnsafeBufferPointer<UInt8>) -> Int {
        var lines = 0
        forEachLine(in: text) { _, _ in lines += 1 }
        return lines
    }

    /// Splits `text` into about `parts` consecutive ranges that each end just after an LF
    /// (the last one at the end of the text), so no line is cut.
    public static func splitAtLineBoundaries(_ text: UnsafeBufferPointer<UInt8>, parts: Int) -> [Range<Int>] {
        let count = text.count
        guard count > 0, parts > 1 else { return [0..<count] }
        var ranges: [Range<Int>] = []
        var start = 0
        for part in 1...parts {
            if start >= count { break }
            var end = part == parts ? count : max(start + 1, count * part / parts)
            while end < count && text[end - 1] != 0x0A { end += 1 }
            ranges.append(start..<end)
            start = end
        }
        if start < count { ranges.append(start..<count) }
        return ranges
    }

    /// Reads a file in chunks of about `chunkSize` bytes that end on line boundaries and
    /// passes each to `body`; memory stays bounded by the chunk size plus the longest line.
    public static func forEachChunk(
        ofFile url: URL, chunkSize: Int = 16 << 20,
        _ body: (UnsafeBufferPointer<UInt8>) throws -> Void
    ) throws {
        let descriptor = open(url.path, O_RDONLY)
        guard descriptor >= 0 else {
            throw TokenizerError.fileSystem(
                path: url.path,
                reason: "cannot open for reading: \(String(cString: strerror(errno)))")
        }
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: chunkSize)
        var filled = 0
        var atEnd = false
        while !atEnd {
            if filled == buffer.count {
                buffer.append(contentsOf: repeatElement(0, count: buffer.count))
            }
            let got = buffer.withUnsafeMutableBytes { raw in
                read(descriptor, raw.baseAddress! + filled, raw.count - filled)
            }
            if got < 0 {
                if errno == EINTR { continue }
                throw TokenizerError.fileSystem(
                    path: url.path, reason: "read failed: \(String(cString: strerror(errno)))")
            }
            if got == 0 { atEnd = true } else { filled += got }
            if filled < chunkSize && !atEnd { continue }
            // Hand over everything up to the last LF; keep the partial line for the next round.
            var cut = filled
            if !atEnd {
                while cut > 0 && buffer[cut - 1] != 0x0A { cut -= 1 }
                if cut == 0 { continue }  // one line longer than the buffer: read more
            }
            if cut > 0 {
                try buffer.withUnsafeBufferPointer {
                    try body(UnsafeBufferPointer(rebasing: $0[0..<cut]))
                }
            }
            buffer.withUnsafeMutableBufferPointer { b in
                for k in 0..<(filled - cut) { b[k] = b[cut + k] }
            }
            filled -= cut
        }
    }
}

/// Writes `bytes` to `url` atomically: a temporary file in the same folder, flushed, then
/// renamed over the target, so readers never see a half-written file.
func writeFileAtomically(_ bytes: [UInt8], to url: URL) throws {
    let directory = url.deletingLastPathComponent().path
    let temporary =
        "\(directory)/.\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL, 0o644)
    guard descriptor >= 0 else {
        throw TokenizerError.fileSystem(
            path: url.path,
            reason: "cannot create a temporary file: \(String(cString: strerror(errno)))")
    }
    var written = 0
    let failure: String? = bytes.withUnsafeBytes { raw -> String? in
        while written < raw.count {
            let n = write(descriptor, raw.baseAddress! + written, raw.count - written)
            if n < 0 {
                if errno == EINTR { continue }
                return "write failed: \(String(cString: strerror(errno)))"
            }
            written += n
        }
        return fsync(descriptor) == 0 ? nil : "fsync failed: \(String(cString: strerror(errno)))"
    }
    close(descriptor)
    if let failure {
        unlink(temporary)
        throw TokenizerError.fileSystem(path: url.path, reason: failure)
    }
    guard rename(temporary, url.path) == 0 else {
        let reason = String(cString: strerror(errno))
        unlink(temporary)
        throw TokenizerError.fileSystem(
            path: url.path, reason: "cannot rename into place: \(reason)")
    }
}

/// Reads a whole file into memory with one clear error line on failure.
func readFileBytes(_ url: URL) throws -> [UInt8] {
    do {
        return [UInt8](try Data(contentsOf: url))
    } catch {
        throw TokenizerError.fileSystem(
            path: url.path, reason: "cannot read: \(error.localizedDescription)")
    }
}

/// Result slots written by concurrent workers, each worker to its own indices only.
/// This is the one place in the target that shares memory between threads.
private final class ParallelSlots<T>: @unchecked Sendable {
    let slots: UnsafeMutablePointer<Result<T, Error>?>
    let count: Int
    init(count: Int) {
        self.count = count
        slots = .allocate(capacity: count)
        slots.initialize(repeating: nil, count: count)
    }
    deinit {
        slots.deinitialize(count: count)
        slots.deallocate()
    }
}

/// Runs `body(0..<count)` on `threadCount` threads (worker w takes parts w, w+threadCount, …)
/// and returns the results in part order; the first error by part order is rethrown.
func parallelMap<T>(count: Int, threadCount: Int, _ body: (Int) throws -> T) throws -> [T] {
    let workers = max(1, min(threadCount, count))
    if workers == 1 { return try (0..<count).map(body) }
    let results = ParallelSlots<T>(count: count)
    withoutActuallyEscaping(body) { body in
        // The closure only runs inside concurrentPerform, which returns after all workers.
        let unsafeBody = UnsafeSendableBox(body)
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            var part = worker
            while part < count {
                results.slots[part] = Result { try unsafeBody.value(part) }
                part += workers
            }
        }
    }
    return try (0..<count).map { try results.slots[$0]!.get() }
}

/// Carries a non-Sendable closure into `concurrentPerform`; sound because the callers'
/// closures only read shared immutable state and write disjoint result slots.
private struct UnsafeSendableBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
