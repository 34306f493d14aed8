fn main() {
    println!("fdfs {}", env!("CARGO_PKG_VERSION"));
}
