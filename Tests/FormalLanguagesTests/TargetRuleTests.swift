import FormalLanguages
import Testing

struct TargetRuleTests {
    func targets(_ task: FormalTask, _ input: String) throws -> String {
        try task.targets(of: input.split(separator: " ").map(String.init)).joined(separator: " ")
    }

    @Test func handCases() throws {
        // Parity: 1 iff the count of 1s so far is even.
        #expect(try targets(.parity, "1 0 1") == "0 0 1")
        #expect(try targets(.parity, "0 0 1 1") == "1 1 0 1")
        #expect(try targets(.aaStar, "a a a a a") == "0 1 0 1 0")
        #expect(try targets(.ababStar, "a b a b a b a b a") == "0 0 0 1 0 0 0 1 0")
        #expect(try targets(.counter2, "a a a b b b") == "c c c b b T")
        #expect(try targets(.counter2, "a b") == "c T")
        #expect(try targets(.counter2, "a a b") == "c c b")
        #expect(try targets(.counter3, "a a b b c c") == "d d b c c T")
        #expect(try targets(.counter3, "a b c") == "d c T")
        #expect(try targets(.shuffle2, "( [ ] )") == "10 11 10 00")
        #expect(try targets(.shuffle2, "[ ( ) [ ] ]") == "01 11 01 01 01 00")
        // Shuffled (not nested) brackets still have counts.
        #expect(try targets(.shuffle2, "( [ ) ]") == "10 11 01 00")
        #expect(try targets(.dyck1, "( ( ) ) ( )") == "1 1 1 0 1 0")
        #expect(try targets(.resetDyck, "( ( 1 ( )") == "1 1 0 1 0")
        #expect(try targets(.resetDyck, "( ) ) 1 ( ( )") == "1 0 0 0 1 1 1")
    }

    @Test func inputsOutsideTheLanguageOrAlphabetNameTheirPosition() {
        let cases: [(FormalTask, String, String)] = [
            (.parity, "0 2", "position 2: unknown input symbol '2'"),
            (.ababStar, "a b b", "position 3: expected 'a'"),
            (.counter2, "b", "position 1: 'b' cannot occur here"),
            (.counter2, "a b b", "position 3: 'b' cannot occur here"),
            (.counter2, "a b a", "position 3: 'a' cannot occur here"),
            (.counter3, "a a b c", "position 4: 'c' cannot occur here"),
            (.counter3, "a b c c", "position 4: 'c' cannot occur here"),
            (.dyck1, "( ) )", "position 3: ')' closes nothing"),
        ]
        for (task, input, message) in cases {
            #expect {
                _ = try task.targets(of: input.split(separator: " ").map(String.init))
            } throws: { error in
                "\(error)".hasPrefix(message) && !"\(error)".contains("\n")
            }
        }
    }

    @Test(arguments: FormalTask.allCases) func eachTargetAlphabetCoversTheRule(task: FormalTask) {
        #expect(FormalTask(rawValue: task.rawValue) == task)
        #expect(Set(task.targetAlphabet).count == task.targetAlphabet.count)
        #expect(Set(task.inputAlphabet).count == task.inputAlphabet.count)
    }

    @Test func thePapersFolderSpellingNamesResetDyck() {
        #expect(FormalTask(name: "reset_dyck") == .resetDyck)
        #expect(FormalTask(name: "counter-2") == .counter2)
        #expect(FormalTask(name: "tomita-1") == nil)
    }
}
