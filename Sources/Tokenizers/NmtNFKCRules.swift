// Builds sentencepiece's `nmt_nfkc` character rules from first principles, the way its
// builder.cc does with ICU, but with Foundation's NFKC/NFKD (Unicode data of this toolchain):
//
// 1. For every Unicode character c (no surrogates, no noncharacters):
//      NFKC(c) != c            → rule c → NFKC(c)
//      NFKD(c) is one char d   → remember c among the characters that decompose to d
//      NFKD(c) is several      → remember the sequence
// 2. For every remembered multi-character NFKD sequence s with NFKC(s) != s: every sequence
//    obtained by replacing each character of s with any character that decomposes to it
//    (e.g. "e" or "ｅ" followed by U+0301) gets the rule → NFKC(s), unless already equal.
//    This is what makes "e" + U+0301 become "é".
// 3. Drop rules that shorter rules already imply (RemoveRedundantMap).
// 4. The "nmt" extras: TAB, LF, FF, CR, U+1680, U+200B, U+200E, U+200F, U+2028, U+2029,
//    U+2581, U+FEFF, U+FFFD, U+200C, U+061C → space; U+0001-0008, U+000B, U+000E-001F, U+007F,
//    U+008F, U+009F → deleted; no rule for U+FF5E (FULLWIDTH TILDE: Japanese text uses it
//    unlike "~"). Then step 3 again.
//
// The rules then go through PrecompiledCharsMap(rules:) into a darts-clone array that
// Python sentencepiece loads as it is.

import Foundation

enum NmtNFKCRules {
    typealias Chars = [UInt32]

    /// The compiled blob for lmtrain-trained models, built once per process (about a second
    /// in release builds).
    static let compiled: Result<[UInt8], TokenizerError> = {
        do {
            var utf8Rules: [[UInt8]: [UInt8]] = [:]
            for (key, value) in nmtRules() { utf8Rules[utf8(key)] = utf8(value) }
            return .success(try PrecompiledCharsMap(rules: utf8Rules).blob)
        } catch let error as TokenizerError {
            return .failure(error)
        } catch {
            return .failure(
                .trainingFailed(reason: "cannot build the nmt_nfkc character map: \(error)"))
        }
    }()

    /// ICU's U_IS_UNICODE_CHAR: a scalar value that is not a noncharacter.
    static func isUnicodeCharacter(_ c: UInt32) -> Bool {
        if c >= 0xD800 && c <= 0xDFFF { return false }
        if c > 0x10FFFF { return false }
        if c >= 0xFDD0 && c <= 0xFDEF { return false }
        return c & 0xFFFE != 0xFFFE
    }

    static func utf8(_ chars: Chars) -> [UInt8] {
        var string = String.UnicodeScalarView()
        for c in chars { string.append(Unicode.Scalar(c)!) }
        return Array(String(string).utf8)
    }

    private static func transform(_ chars: Chars, compose: Bool) -> Chars {
        var scalars = String.UnicodeScalarView()
        for c in chars { scalars.append(Unicode.Scalar(c)!) }
        let string = String(scalars)
        let result =
            compose
            ? string.precomposedStringWithCompatibilityMapping
            : string.decomposedStringWithCompatibilityMapping
        return result.unicodeScalars.map(\.value)
    }

    static func nfkc(_ chars: Chars) -> Chars { transform(chars, compose: true) }
    static func nfkd(_ chars: Chars) -> Chars { transform(chars, compose: false) }

    /// Steps 1-3: the NFKC rules.
    static func nfkcRules() -> [Chars: Chars] {
        var rules: [Chars: Chars] = [:]
        var decomposedSequences = Set<Chars>()
        var originals: [UInt32: [UInt32]] = [:]  // NFKD character → characters decomposing to it
        for c in UInt32(1)...0x10FFFF where isUnicodeCharacter(c) {
            // Unassigned and private-use code points normalise to themselves and decompose to
            // themselves alone, so they add nothing; skipping them saves most of the work.
            let category = Unicode.Scalar(c)!.properties.generalCategory
            if category == .unassigned || category == .privateUse { continue }
            let composed = nfkc([c])
            if composed != [c] { rules[[c]] = composed }
            let decomposed = nfkd([c])
            if decomposed.count == 1 {
                originals[decomposed[0], default: []].append(c)
            } else {
                decomposedSequences.insert(decomposed)
            }
        }
        for sequence in decomposedSequences {
            let composed = nfkc(sequence)
            if composed == sequence { continue }
            var expansions: [Chars] = [[]]
            for d in sequence {
                // Every character of an NFKD result decomposes to itself, so it is present.
                let choices = originals[d] ?? [d]
                expansions = expansions.flatMap { prefix in choices.map { prefix + [$0] } }
            }
            for expansion in expansions where expansion != composed {
                rules[expansion] = composed
            }
        }
        return removeRedundant(rules)
    }

    /// Step 4 on top of the NFKC rules.
    static func nmtRules() -> [Chars: Chars] {
        var rules = nfkcRules()
        // U+061C (ARABIC LETTER MARK, a bidi mark like U+200E/U+200F) is mapped to space by
        // the nmt_nfkc table of the sentencepiece 0.2 Python package though not by older
        // builder.cc versions; lmtrain follows the package.
        for c: UInt32 in [
            0x09, 0x0A, 0x0C, 0x0D, 0x1680, 0x200B, 0x200E, 0x200F, 0x2028, 0x2029, 0x2581, 0xFEFF,
            0xFFFD, 0x200C,
            0x061C,
        ] {
            rules[[c]] = [0x20]
        }
        let deleted: [UInt32] =
            Array(0x01...0x08) + [0x0B] + Array(0x0E...0x1F) + [0x7F, 0x8F, 0x9F]
        for c in deleted { rules[[c]] = [] }
        rules[[0xFF5E]] = nil
        return removeRedundant(rules)
    }

    /// Applies `rules` greedily, longest source first, using sources of at most `maxLength`
    /// characters (builder.cc's Normalize).
    static func apply(_ rules: [Chars: Chars], to source: Chars, maxLength: Int) -> Chars {
        var output: Chars = []
        var i = 0
        while i < source.count {
            var length = min(maxLength, source.count - i)
            var replacement: Chars?
            while length > 0 {
                if let found = rules[Array(source[i..<i + length])] {
                    replacement = found
                    break
                }
                length -= 1
            }
            if let replacement {
                output.append(contentsOf: replacement)
                i += length
            } else {
                output.append(source[i])
                i += 1
            }
        }
        return output
    }

    /// Keeps a multi-character rule only if the shorter rules do not already produce its
    /// result (builder.cc's RemoveRedundantMap).
    static func removeRedundant(_ rules: [Chars: Chars]) -> [Chars: Chars] {
        var kept = rules.filter { $0.key.count == 1 }
        let maxLength = rules.keys.map(\.count).max() ?? 1
        if maxLength >= 2 {
            for length in 2...maxLength {
                for (key, value) in rules where key.count == length {
                    if apply(kept, to: key, maxLength: length - 1) != value { kept[key] = value }
                }
            }
        }
        return kept
    }
}
