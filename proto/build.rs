//! Compiles the .proto files with protox (pure Rust), so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "ferry/v1/ingest.proto",
        "ferry/v1/journal.proto",
        "ferry/v1/manifest.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    // Blob bodies as `Bytes`: decoded as slices of the received frame and
    // sent from slices of a pack read, not copied into a Vec of their own.
    tonic_prost_build::configure()
        .bytes(".ferry.v1.Blob.data")
        .bytes(".ferry.v1.FetchedBlob.data")
        .compile_fds(descriptors)?;
    Ok(())
}
