// Unicode script of a character, for sentencepiece's rule that a trained piece must not mix
// scripts (trainer_interface.cc, IsValidSentencePiece with split_by_unicode_script).
//
// Swift exposes the Script property only through regular expressions (`\p{Script=Latin}`),
// so a character's script is found by trying each script's pattern, most common first, and
// remembered. Characters of no listed script count as Common, as in sentencepiece.

/// Finds and caches the Unicode script of characters.
struct UnicodeScriptClassifier {
    /// Script names (Unicode long names); the index is the script id. Names the toolchain's
    /// regex engine does not know (scripts newer than its Unicode data) are skipped.
    static let names: [String] = [
        "Common", "Latin", "Inherited", "Greek", "Cyrillic", "Han", "Hiragana", "Katakana",
        "Hangul",
        "Arabic", "Hebrew", "Devanagari", "Thai", "Armenian", "Georgian", "Adlam", "Ahom",
        "Anatolian_hieroglyphs", "Avestan", "Balinese", "Bamum", "Bassa_vah", "Batak", "Bengali",
        "Bhaiksuki", "Bopomofo", "Brahmi", "Braille", "Buginese", "Buhid", "Canadian_aboriginal",
        "Carian",
        "Caucasian_albanian", "Chakma", "Cham", "Cherokee", "Chorasmian", "Coptic", "Cuneiform",
        "Cypriot",
        "Cypro_minoan", "Deseret", "Dives_akuru", "Dogra", "Duployan", "Egyptian_hieroglyphs",
        "Elbasan",
        "Elymaic", "Ethiopic", "Glagolitic", "Gothic", "Grantha", "Gujarati", "Gunjala_gondi",
        "Gurmukhi",
        "Hanifi_rohingya", "Hanunoo", "Hatran", "Imperial_aramaic", "Inscriptional_pahlavi",
        "Inscriptional_parthian", "Javanese", "Kaithi", "Kannada", "Kayah_li", "Kharoshthi",
        "Khitan_small_script", "Khmer", "Khojki", "Khudawadi", "Lao", "Lepcha", "Limbu", "Linear_a",
        "Linear_b", "Lisu", "Lycian", "Lydian", "Mahajani", "Makasar", "Malayalam", "Mandaic",
        "Manichaean",
        "Marchen", "Masaram_gondi", "Medefaidrin", "Meetei_mayek", "Mende_kikakui",
        "Meroitic_cursive",
        "Meroitic_hieroglyphs", "Miao", "Modi", "Mongolian", "Mro", "Multani", "Myanmar",
        "Nabataean",
        "Nandinagari", "New_tai_lue", "Newa", "Nko", "Nushu", "Nyiakeng_puachue_hmong", "Ogham",
        "Ol_chiki",
        "Old_hungarian", "Old_italic", "Old_north_arabian", "Old_permic", "Old_persian",
        "Old_sogdian",
        "Old_south_arabian", "Old_turkic", "Old_uyghur", "Oriya", "Osage", "Osmanya",
        "Pahawh_hmong",
        "Palmyrene", "Pau_cin_hau", "Phags_pa", "Phoenician", "Psalter_pahlavi", "Rejang", "Runic",
        "Samaritan", "Saurashtra", "Sharada", "Shavian", "Siddham", "SignWriting", "Sinhala",
        "Sogdian",
        "Sora_sompeng", "Soyombo", "Sundanese", "Syloti_nagri", "Syriac", "Tagalog", "Tagbanwa",
        "Tai_le",
        "Tai_tham", "Tai_viet", "Takri", "Tamil", "Tangsa", "Tangut", "Telugu", "Thaana", "Tibetan",
        "Tifinagh", "Tirhuta", "Toto", "Ugaritic", "Vai", "Vithkuqi", "Wancho", "Warang_citi",
        "Yezidi",
        "Yi", "Zanabazar_square",
        // Added in Unicode 15 and 16.
        "Kawi", "Nag_Mundari", "Garay", "Gurung_Khema", "Kirat_Rai", "Ol_Onal", "Sunuwar", "Todhri",
        "Tulu_Tigalari",
    ]
    static let common = 0
    static let latin = 1
    static let inherited = 2
    static let han = names.firstIndex(of: "Han")!
    static let hiragana = names.firstIndex(of: "Hiragana")!
    static let katakana = names.firstIndex(of: "Katakana")!

    private var patterns: [(id: Int, regex: Regex<AnyRegexOutput>)] = []
    private var cache: [UInt32: Int] = [:]

    init() {
        for (id, name) in Self.names.enumerated() {
            if let regex = try? Regex("\\p{Script=\(name)}") {
                patterns.append((id, regex.matchingSemantics(.unicodeScalar)))
            }
        }
    }

    /// The script id of `scalar` (an index into ``names``).
    mutating func script(of scalar: UInt32) -> Int {
        if scalar < 0x80 {
            // ASCII letters are Latin, everything else in ASCII is Common.
            let isLetter = (scalar >= 0x41 && scalar <= 0x5A) || (scalar >= 0x61 && scalar <= 0x7A)
            return isLetter ? Self.latin : Self.common
        }
        if let known = cache[scalar] { return known }
        var result = Self.common
        if let character = Unicode.Scalar(scalar) {
            let string = String(Character(character))
            for (id, regex) in patterns where (try? regex.wholeMatch(in: string)) != nil {
                result = id
                break
            }
        }
        cache[scalar] = result
        return result
    }
}
