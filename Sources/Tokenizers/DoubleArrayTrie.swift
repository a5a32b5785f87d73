// A double-array trie in darts-clone's unit format, the format of the trie inside
// SentencePiece's `precompiled_charsmap`. Reading must match darts-clone bit for bit; the
// builder only has to produce an array that darts-clone's search functions read correctly
// (sentencepiece loads the units as they are, with no checks).
//
// Unit layout (32 bits):
//   bit 31      set on value units ("leaf"), whose bits 0-30 hold the value
//   bits 0-7    label: the key byte that leads to this unit (non-leaf units)
//   bit 8       has_leaf: the unit's label-0 child (at base = id ^ offset) is a value unit
//   bit 9       offset extension: the stored offset is shifted left by 8
//   bits 10-31  offset; the children of unit `id` are at `id ^ offset ^ byte`
// A transition from `id` on byte c lands on `id ^ offset(id) ^ c` and is valid when that
// unit's label equals c; the value of a key is in the unit at `node ^ offset(node)`.

/// Reads a darts-clone double array.
struct DoubleArray: Sendable, Equatable {
    /// The units, host order (the file stores them little-endian).
    let units: [UInt32]

    @inline(__always) static func offset(_ unit: UInt32) -> Int {
        Int((unit >> 10) << ((unit & (1 << 9)) >> 6))
    }
    @inline(__always) static func hasLeaf(_ unit: UInt32) -> Bool { (unit >> 8) & 1 == 1 }
    @inline(__always) static func value(_ unit: UInt32) -> Int { Int(unit & 0x7FFF_FFFF) }
    @inline(__always) static func label(_ unit: UInt32) -> UInt32 { unit & (0x8000_0000 | 0xFF) }

    /// darts-clone's `commonPrefixSearch`: visits each key that is a prefix of `key[start...]`,
    /// shortest first, as (length, value), stopping after `maxResults` (sentencepiece's
    /// normaliser looks at 32). Out-of-range units (a corrupt array) end the search.
    @inline(__always)
    func forEachPrefix(
        of key: UnsafeBufferPointer<UInt8>, from start: Int, maxResults: Int = 32,
        _ body: (_ length: Int, _ value: Int) -> Void
    ) {
        units.withUnsafeBufferPointer { units in
            guard !units.isEmpty else { return }
            var found = 0
            var node = Self.offset(units[0])
            var i = start
            while i < key.count {
                let byte = Int(key[i])
                node ^= byte
                guard node < units.count else { return }
                let unit = units[node]
                guard Self.label(unit) == UInt32(byte) else { return }
                node ^= Self.offset(unit)
                if Self.hasLeaf(unit) {
                    guard node < units.count else { return }
                    if found < maxResults { body(i + 1 - start, Self.value(units[node])) }
                    found += 1
                }
                i += 1
            }
        }
    }

    /// The unit index reached from the root by `key`, or nil (darts-clone's `traverse`).
    func node(for key: [UInt8]) -> Int? {
        var node = 0
        for byte in key {
            guard node < units.count else { return nil }
            let next = node ^ Self.offset(units[node]) ^ Int(byte)
            guard next < units.count, Self.label(units[next]) == UInt32(byte) else { return nil }
            node = next
        }
        return node
    }

    /// The value stored for exactly the key that led to `node`, if any.
    func value(at node: Int) -> Int? {
        let unit = units[node]
        guard Self.hasLeaf(unit) else { return nil }
        let leaf = node ^ Self.offset(unit)
        return leaf < units.count ? Self.value(units[leaf]) : nil
    }

    /// The bytes that have a transition out of `node`.
    func childLabels(of node: Int) -> [UInt8] {
        let base = node ^ Self.offset(units[node])
        return (1...255).compactMap { c -> UInt8? in
            let child = base ^ c
            return child < units.count && Self.label(units[child]) == UInt32(c) ? UInt8(c) : nil
        }
    }

    /// Every (key, value) pair (sentencepiece's `DecompileCharsMap`), by depth-first search
    /// over all 255 non-zero bytes. Subtrees are listed once per base and reused, since a
    /// darts-clone DAWG reaches one subtree from many units; this keeps decompiling
    /// sentencepiece's 225,000-rule table fast.
    func allEntries() -> [(key: [UInt8], value: Int)] {
        guard !units.isEmpty else { return [] }
        var memo: [Int: [(suffix: [UInt8], value: Int)]] = [:]
        func entries(below node: Int) -> [(suffix: [UInt8], value: Int)] {
            let base = node ^ Self.offset(units[node])
            if let known = memo[base] { return known }
            var result: [(suffix: [UInt8], value: Int)] = []
            units.withUnsafeBufferPointer { units in
                for c in 1...255 {
                    let child = base ^ c
                    guard child < units.count, Self.label(units[child]) == UInt32(c) else {
                        continue
                    }
                    if Self.hasLeaf(units[child]) {
                        let leaf = child ^ Self.offset(units[child])
                        if leaf < units.count {
                            result.append(([UInt8(c)], Self.value(units[leaf])))
                        }
                    }
                    for (suffix, value) in entries(below: child) {
                        result.append(([UInt8(c)] + suffix, value))
                    }
                }
            }
            memo[base] = result
            return result
        }
        return entries(below: 0).map { (key: $0.suffix, value: $0.value) }
    }
}

/// Builds a darts-clone-compatible double array from sorted, distinct, non-empty keys
/// without zero bytes. It lays out a plain trie (darts-clone itself would share suffixes as a
/// DAWG; any layout is read the same way).
enum DoubleArrayBuilder {
    struct BuildError: Error, CustomStringConvertible {
        var description: String
    }

    private struct Node {
        var children: [(label: UInt8, node: Int32)] = []
        var value: Int32 = -1
    }

    static func build(keys: [[UInt8]], values: [Int32]) throws(BuildError) -> [UInt32] {
        precondition(keys.count == values.count)
        // 1. The trie. Keys arrive sorted, so a new child always sorts after its siblings.
        var nodes = [Node()]
        for (key, value) in zip(keys, values) {
            guard !key.isEmpty, !key.contains(0) else {
                throw BuildError(description: "keys must be non-empty and free of zero bytes")
            }
            guard value >= 0 else { throw BuildError(description: "values must not be negative") }
            var node = 0
            for byte in key {
                if let last = nodes[node].children.last, last.label == byte {
                    node = Int(last.node)
                } else {
                    if let last = nodes[node].children.last, last.label > byte {
                        throw BuildError(description: "keys must be sorted")
                    }
                    nodes.append(Node())
                    nodes[node].children.append((byte, Int32(nodes.count - 1)))
                    node = nodes.count - 1
                }
            }
            guard nodes[node].value < 0 else { throw BuildError(description: "duplicate key") }
            nodes[node].value = value
        }

        // 2. Share equal subtrees (same value, same labels to equal subtrees), turning the
        // trie into a minimal DAWG as darts-clone does: a shared subtree is laid out once and
        // every unit leading to it points at the same base. For sentencepiece's nmt_nfkc
        // rules this shrinks the array about tenfold (many sources end in the same jamo or
        // combining mark with the same result).
        var classOf = [Int32](repeating: -1, count: nodes.count)
        var classes: [Node] = []
        var signatures: [[Int32]: Int32] = [:]
        // Children are created after their parents, so a reverse scan sees children first.
        for index in stride(from: nodes.count - 1, through: 0, by: -1) {
            var signature: [Int32] = [nodes[index].value]
            for (label, child) in nodes[index].children {
                signature.append(Int32(label))
                signature.append(classOf[Int(child)])
            }
            if let existing = signatures[signature] {
                classOf[index] = existing
            } else {
                let id = Int32(classes.count)
                signatures[signature] = id
                classOf[index] = id
                classes.append(
                    Node(
                        children: nodes[index].children.map { ($0.label, classOf[Int($0.node)]) },
                        value: nodes[index].value))
            }
        }

        // 3. Placement, breadth first over the DAWG. Each node gets a base b (unique over all
        // nodes, so a transition can never land on another node's child with the same label)
        // such that b ^ c is free for each child label c (label 0 = its value unit); every
        // unit that leads to the node stores offset = its position ^ b.
        var layout = Layout()
        layout.addBlock()
        layout.use(0)  // the root
        var baseOfClass = [Int](repeating: -1, count: classes.count)
        var waiting = [[Int]](repeating: [], count: classes.count)  // unit positions per class
        let root = Int(classOf[0])
        waiting[root] = [0]
        var queue = [root]
        var head = 0
        while head < queue.count {
            let classIndex = queue[head]
            head += 1
            let node = classes[classIndex]
            var labels: [Int] = node.value >= 0 ? [0] : []
            labels.append(contentsOf: node.children.map { Int($0.label) })
            if labels.isEmpty { continue }
            let base = try layout.findBase(labels: labels)
            baseOfClass[classIndex] = base
            for position in waiting[classIndex] {
                layout.units[position] |= try encodeOffset(position ^ base)
            }
            waiting[classIndex] = []
            layout.baseUsed[base] = true
            for c in labels { layout.use(base ^ c) }
            if node.value >= 0 { layout.units[base] = UInt32(node.value) | 0x8000_0000 }
            for (label, child) in node.children {
                let childPosition = base ^ Int(label)
                let childHasValue = classes[Int(child)].value >= 0
                layout.units[childPosition] = UInt32(label) | (childHasValue ? 1 << 8 : 0)
                let childBase = baseOfClass[Int(child)]
                if childBase >= 0 {
                    layout.units[childPosition] |= try encodeOffset(childPosition ^ childBase)
                } else {
                    if waiting[Int(child)].isEmpty { queue.append(Int(child)) }
                    waiting[Int(child)].append(childPosition)
                }
            }
        }
        layout.labelUnusedUnits()
        return layout.units
    }

    private static func encodeOffset(_ offset: Int) throws(BuildError) -> UInt32 {
        if offset < 1 << 21 { return UInt32(offset) << 10 }
        guard offset & 0xFF == 0, offset < 1 << 29 else {
            throw BuildError(description: "double array too large (offset \(offset))")
        }
        return UInt32(offset >> 8) << 10 | 1 << 9
    }

    /// Units, occupancy and a free list restricted to the last few blocks (as darts-clone
    /// does) so that finding a base stays cheap on large tries.
    private struct Layout {
        static let activeBlocks = 16
        var units: [UInt32] = []
        var used: [Bool] = []
        var baseUsed: [Bool] = []
        var nextFree: [Int32] = []
        var previousFree: [Int32] = []
        var freeHead: Int32 = -1
        var firstActiveBlock = 0

        mutating func addBlock() {
            let start = units.count
            units.append(contentsOf: repeatElement(0, count: 256))
            used.append(contentsOf: repeatElement(false, count: 256))
            baseUsed.append(contentsOf: repeatElement(false, count: 256))
            nextFree.append(contentsOf: repeatElement(-1, count: 256))
            previousFree.append(contentsOf: repeatElement(-1, count: 256))
            // Append the new block's positions to the end of the free list.
            var tail = freeHead
            if tail >= 0 { while nextFree[Int(tail)] >= 0 { tail = nextFree[Int(tail)] } }
            for position in start..<start + 256 {
                if tail >= 0 {
                    nextFree[Int(tail)] = Int32(position)
                    previousFree[position] = tail
                } else {
                    freeHead = Int32(position)
                }
                tail = Int32(position)
            }
            // Retire the oldest active block: its remaining free units stay unused forever.
            let blocks = units.count / 256
            while blocks - firstActiveBlock > Self.activeBlocks {
                for position in firstActiveBlock * 256..<(firstActiveBlock + 1) * 256
                where !used[position] {
                    unlink(position)
                }
                firstActiveBlock += 1
            }
        }

        private mutating func unlink(_ position: Int) {
            let next = nextFree[position]
            let previous = previousFree[position]
            if previous >= 0 { nextFree[Int(previous)] = next } else { freeHead = next }
            if next >= 0 { previousFree[Int(next)] = previous }
            nextFree[position] = -1
            previousFree[position] = -1
        }

        mutating func use(_ position: Int) {
            precondition(!used[position])
            used[position] = true
            if position / 256 >= firstActiveBlock { unlink(position) }
        }

        /// A free base for children with these labels. Offsets stay encodable without the
        /// extension bit as long as the array has fewer than 2^21 units (encodeOffset checks).
        mutating func findBase(labels: [Int]) throws(BuildError) -> Int {
            while true {
                var candidate = freeHead
                while candidate >= 0 {
                    let base = Int(candidate) ^ labels[0]
                    if base != 0, !baseUsed[base], labels.allSatisfy({ !used[base ^ $0] }) {
                        return base
                    }
                    candidate = nextFree[Int(candidate)]
                }
                addBlock()
            }
        }

        /// Gives every unused unit in a block the label `position ^ u`, where u is a base no
        /// node in that block uses. A transition from a node with base b on byte c lands on
        /// b ^ c and checks label == c = (b ^ c) ^ b; since u != b that check fails, so no
        /// byte (not even 0) can walk into an unused unit. darts-clone does the same.
        mutating func labelUnusedUnits() {
            for block in 0..<units.count / 256 {
                let range = block * 256..<(block + 1) * 256
                guard range.contains(where: { !used[$0] }) else { continue }
                guard let unusedBase = range.first(where: { !baseUsed[$0] }) else { continue }
                for position in range where !used[position] {
                    units[position] = UInt32((position ^ unusedBase) & 0xFF)
                }
            }
        }
    }
}
