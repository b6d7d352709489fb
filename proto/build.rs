//! Compiles the .proto files with protox (pure Rust), so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "ferry/v1/ingest.proto",
        "ferry/v1/journal.proto",
        "ferry/v1/manifest.proto",
        "ferry/v1/replication.proto",
        "ferry/v1/policy.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    // Blob bodies as `Bytes`: decoded as slices of the received frame and
    // sent from slices of a pack read, not copied into a Vec of their own.
    // A commit's id list too: 32 MiB for a million files, which the hub
    // would otherwise hold twice while decoding it.
    tonic_prost_build::configure()
        .bytes(".ferry.v1.Blob.data")
        .bytes(".ferry.v1.FetchedBlob.data")
        .bytes(".ferry.v1.CommitRequest.data_chunk_ids")
        .bytes(".ferry.v1.CheckReferencesRequest.data_chunk_ids")
        .compile_fds(descriptors)?;
    Ok(())
}
