// Readers for the official WikiText archives and their extracted folders
// (../shared/data/README.md):
//   wikitext-103-v1.zip      -> wikitext-103/wiki.{train,valid,test}.tokens
//   wikitext-103-raw-v1.zip  -> wikitext-103-raw/wiki.{train,valid,test}.raw
//   wikitext-2-v1.zip, wikitext-2-raw-v1.zip likewise (wikitext-2/, wikitext-2-raw/).
// Splits are TextSources, so they are streamed: members are inflated chunk by chunk and files
// are read in chunks.

import Foundation

/// A WikiText corpus in the official layout: three splits, `.tokens` (with `<unk>`) or `.raw`.
public struct WikiText: Sendable {
    /// The two published variants.
    public enum Kind: String, Sendable, CaseIterable {
        /// `wiki.*.tokens`: rare words replaced by `<unk>`.
        case tokens
        /// `wiki.*.raw`: the original words.
        case raw
    }

    /// A name for messages and cache folders: `wikitext-2`, `wikitext-103-raw`, or the folder's.
    public let name: String
    /// `.tokens` or `.raw` files.
    public let kind: Kind
    /// The archive or folder the splits were found in.
    public let location: URL
    public let train: TextSource
    public let valid: TextSource
    public let test: TextSource

    /// The corpora `--data` accepts by name (looked up in the data directory).
    public static let knownNames = ["wikitext-103", "wikitext-103-raw", "wikitext-2", "wikitext-2-raw"]

    /// The text of `split`.
    public func split(_ split: Split) -> TextSource {
        switch split {
        case .train: train
        case .valid: valid
        case .test: test
        }
    }

    /// The file name of a split: `wiki.train.tokens`.
    public static func fileName(_ split: Split, kind: Kind) -> String { "wiki.\(split.rawValue).\(kind.rawValue)" }

    /// Finds a corpus named in ``knownNames`` in `dataDirectory`: the extracted folder
    /// (`NAME/`, or `NAME-v1/NAME/` as unzipping into a folder of the archive's name gives) or
    /// the archive (`NAME-v1.zip`, `NAME.zip`).
    public static func locate(_ name: String, in dataDirectory: URL) throws -> WikiText {
        let fileManager = FileManager.default
        let archiveName = name.hasSuffix("-raw") ? "\(name.dropLast(4))-raw-v1" : "\(name)-v1"
        let candidates = [
            dataDirectory.appendingPathComponent(name),
            dataDirectory.appendingPathComponent(archiveName).appendingPathComponent(name),
            dataDirectory.appendingPathComponent("\(archiveName).zip"),
            dataDirectory.appendingPathComponent("\(name).zip"),
        ]
        for candidate in candidates where fileManager.fileExists(atPath: candidate.path) {
            return try open(candidate)
        }
        let fetch = name == "wikitext-2-raw" ? "download \(archiveName).zip" : "run Scripts/get-data \(name)"
        throw DataError("\(name) is not in \(dataDirectory.path) (looked for \(name)/ and \(archiveName).zip): \(fetch), or pass --data PATH to its archive or folder")
    }

    /// Whether `url` is an archive or folder holding WikiText split files (any of them), so
    /// the loader knows to read it as WikiText.
    public static func looksLikeWikiText(_ url: URL) -> Bool {
        if url.pathExtension.lowercased() == "zip" {
            guard let archive = try? ZipArchive(url: url) else { return false }
            return archive.members.contains { isSplitFileName(($0.name as NSString).lastPathComponent) }
        }
        do {
            return try splitFolder(in: url) != nil
        } catch {
            return true  // several WikiText folders: opening it says so
        }
    }

    /// Opens an archive or a folder in the official layout; a folder may also be the one that
    /// holds the extracted `wikitext-*` folder.
    public static func open(_ url: URL) throws -> WikiText {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw DataError("--data \(url.path): no such file or folder")
        }
        return isDirectory.boolValue ? try openFolder(url) : try openArchive(url)
    }

    static func isSplitFileName(_ name: String) -> Bool {
        Split.allCases.contains { split in Kind.allCases.contains { name == fileName(split, kind: $0) } }
    }

    static func openArchive(_ url: URL) throws -> WikiText {
        let archive = try ZipArchive(url: url)
        func member(_ split: Split, _ kind: Kind) -> ZipArchive.Member? {
            let file = fileName(split, kind: kind)
            return archive.members.first { $0.name == file || $0.name.hasSuffix("/" + file) }
        }
        guard let kind = Kind.allCases.first(where: { kind in Split.allCases.contains { member($0, kind) != nil } }) else {
            let listed = archive.members.prefix(5).map(\.name).joined(separator: ", ")
            throw DataError("\(url.path): not a WikiText archive (no wiki.train.tokens or wiki.train.raw; members: \(listed)); download it again with Scripts/get-data")
        }
        var found: [Split: ZipArchive.Member] = [:]
        for split in Split.allCases {
            guard let m = member(split, kind) else {
                throw DataError("\(url.path): the archive has no member \(fileName(split, kind: kind)) (a WikiText archive holds wiki.train, wiki.valid and wiki.test .\(kind.rawValue)); download it again with Scripts/get-data")
            }
            found[split] = m
        }
        // The folder inside the archive names the corpus (wikitext-2/...).
        let folder = (found[.train]!.name as NSString).deletingLastPathComponent
        let stem = url.deletingPathExtension().lastPathComponent.replacingOccurrences(of: "-v1", with: "")
        let name = sanitizedName(folder.isEmpty ? stem : (folder as NSString).lastPathComponent)
        let source = { (split: Split) in TextSource(archive: archive, member: found[split]!) }
        return WikiText(name: name, kind: kind, location: url, train: source(.train), valid: source(.valid), test: source(.test))
    }

    /// The folder holding the split files: `url` itself or its one `wikitext*` subfolder.
    static func splitFolder(in url: URL) throws -> URL? {
        let fileManager = FileManager.default
        func holdsSplits(_ folder: URL) -> Bool {
            Split.allCases.contains { split in
                Kind.allCases.contains { fileManager.fileExists(atPath: folder.appendingPathComponent(fileName(split, kind: $0)).path) }
            }
        }
        if holdsSplits(url) { return url }
        let names = (try? fileManager.contentsOfDirectory(atPath: url.path)) ?? []
        let inner = names.filter { $0.hasPrefix("wikitext") }.sorted().map { url.appendingPathComponent($0) }.filter(holdsSplits)
        if inner.count > 1 {
            throw DataError("--data \(url.path): holds several WikiText folders (\(inner.map(\.lastPathComponent).joined(separator: ", "))); pass one of them")
        }
        return inner.first
    }

    static func openFolder(_ url: URL) throws -> WikiText {
        guard let folder = try splitFolder(in: url) else {
            throw DataError("--data \(url.path): the folder holds no WikiText files (wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens or the .raw ones)")
        }
        let fileManager = FileManager.default
        let kind = Kind.allCases.first { kind in
            Split.allCases.contains { fileManager.fileExists(atPath: folder.appendingPathComponent(fileName($0, kind: kind)).path) }
        }!
        var sources: [Split: TextSource] = [:]
        for split in Split.allCases {
            let file = folder.appendingPathComponent(fileName(split, kind: kind))
            guard fileManager.fileExists(atPath: file.path) else {
                throw DataError("\(folder.path): \(fileName(split, kind: kind)) is missing (a WikiText folder holds wiki.train, wiki.valid and wiki.test .\(kind.rawValue)); extract or download the corpus again")
            }
            sources[split] = try TextSource(file: file)
        }
        return WikiText(
            name: sanitizedName(folder.lastPathComponent), kind: kind, location: folder,
            train: sources[.train]!, valid: sources[.valid]!, test: sources[.test]!)
    }

    /// Letters, digits, `.`, `_` and `-` only, so the name can be a folder name.
    static func sanitizedName(_ name: String) -> String {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        let cleaned = String(name.map { allowed.contains($0) ? $0 : "_" })
        return cleaned.isEmpty || cleaned.allSatisfy({ $0 == "." }) ? "wikitext" : cleaned
    }
}
