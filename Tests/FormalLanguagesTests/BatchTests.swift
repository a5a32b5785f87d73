import FormalLanguages
import Testing

struct BatchTests {
    @Test func modelIDsPadWithTheVocabularySize() throws {
        let dataset = try #require(paperData[.shuffle2])
        #expect(dataset.inputVocabulary.count == 4 && dataset.targetVocabulary.count == 4)
        #expect(dataset.inputPadID == 4 && dataset.inputClassCount == 5)
        #expect(dataset.targetPadID == 4 && dataset.targetClassCount == 5)
        for split in FormalSplit.allCases {
            #expect(dataset[split].inputs.allSatisfy { $0.allSatisfy { (0..<dataset.inputPadID).contains($0) } })
            #expect(dataset[split].targets.allSatisfy { $0.allSatisfy { (0..<dataset.targetPadID).contains($0) } })
        }
    }

    @Test func batchesPadToTheLongestSequenceAndReuseTheirStorage() throws {
        let dataset = try #require(paperData[.counter3])
        let indices = [4, 0, 9]
        var batch = FormalBatch()
        batch.fill(from: dataset, split: .bin1, indices: indices)
        let longest = indices.map { dataset.bin1.inputs[$0].count }.max()!
        #expect(batch.rows == 3 && batch.length == longest)
        #expect(batch.inputs.count == 3 * longest && batch.targets.count == 3 * longest)
        for (row, index) in indices.enumerated() {
            let input = dataset.bin1.inputs[index]
            let rowInputs = Array(batch.inputs[row * longest..<(row + 1) * longest])
            let rowTargets = Array(batch.targets[row * longest..<(row + 1) * longest])
            let padding = longest - input.count
            #expect(rowInputs == input + [Int32](repeating: dataset.inputPadID, count: padding))
            #expect(rowTargets == dataset.bin1.targets[index] + [Int32](repeating: -1, count: padding))
        }

        let storage = batch.inputs.withUnsafeBufferPointer { $0.baseAddress }
        let targetStorage = batch.targets.withUnsafeBufferPointer { $0.baseAddress }
        batch.fill(from: dataset, split: .train, indices: [1, 2][...])
        #expect(batch.rows == 2)
        #expect(batch.inputs.withUnsafeBufferPointer { $0.baseAddress } == storage)
        #expect(batch.targets.withUnsafeBufferPointer { $0.baseAddress } == targetStorage)
    }
}
