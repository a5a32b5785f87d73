import Foundation
import Training

/// Reads a checkpoint named on the command line (its header, checksums and config checked)
/// and prints the note of one written before checkpoints carried checksums.
func loadCheckpoint(_ url: URL) throws -> Checkpoint.Loaded {
    let loaded = try Checkpoint.load(url)
    if let note = loaded.checksumNote { print(note) }
    return loaded
}
