//! Storages that wrap another one (counting, remembering, boxing) pass most calls on unchanged:
//! [`forward_storage!`](crate::forward_storage) writes those methods, so that a wrapper spells
//! out only the ones it changes.

/// Writes, inside an `impl StorageRead for W` or `impl StorageWrite for W` block, the methods
/// named after `=>` as calls of the same method on the storage `TO(self)` gives (`TO`: a
/// function from `&W` to a reference to the wrapped storage, such as `W::inner` or
/// `std::ops::Deref::deref`).
///
/// Only the methods named are written: one left out keeps the trait's default (which may call
/// the wrapper's own methods rather than the wrapped storage's), and one the wrapper changes is
/// written by hand next to the macro.
///
/// ```ignore
/// impl StorageRead for Counting {
///     nar_tool::forward_storage!(Counting::inner => describe, locate, stat, open, list);
///     fn read_small(&self, key: &CacheKey, limit: u64) -> io::Result<Option<Vec<u8>>> {
///         self.count(key);
///         self.inner.read_small(key, limit)
///     }
/// }
/// ```
///
/// The methods of [`StorageRead`](crate::cache::storage::StorageRead): `describe`, `locate`,
/// `stat`, `open`, `list`, `list_sized`, `read_small`, `requests_in_flight`, `read_range`; of
/// [`StorageWrite`](crate::cache::storage::StorageWrite): `prepare`, `stage`,
/// `writes_in_place`, `stage_at`, `put_if_absent`, `put`, `replace_if_unchanged`, `delete`,
/// `barrier`, `lock`, `gc_lock`, `gc_batch_lock`, `lease`, `live_leases`, `gc_roots`,
/// `clean_abandoned`.
#[macro_export]
macro_rules! forward_storage {
    ($to:path => $($method:ident),+ $(,)?) => {
        $($crate::forward_storage!(@one $to, $method);)+
    };

    // StorageRead
    (@one $to:path, describe) => {
        fn describe(&self) -> ::std::string::String {
            $crate::cache::storage::StorageRead::describe($to(self))
        }
    };
    (@one $to:path, locate) => {
        fn locate(&self, key: &$crate::cache::layout::CacheKey) -> ::std::string::String {
            $crate::cache::storage::StorageRead::locate($to(self), key)
        }
    };
    (@one $to:path, stat) => {
        fn stat(
            &self,
            key: &$crate::cache::layout::CacheKey,
        ) -> ::std::io::Result<::std::option::Option<$crate::cache::storage::ObjectMeta>> {
            $crate::cache::storage::StorageRead::stat($to(self), key)
        }
    };
    (@one $to:path, open) => {
        fn open(
            &self,
            key: &$crate::cache::layout::CacheKey,
        ) -> ::std::io::Result<::std::option::Option<$crate::cache::storage::Object>> {
            $crate::cache::storage::StorageRead::open($to(self), key)
        }
    };
    (@one $to:path, list) => {
        fn list(
            &self,
            dir: $crate::cache::layout::KeyDir,
        ) -> ::std::io::Result<
            ::std::boxed::Box<
                dyn ::std::iter::Iterator<Item = ::std::io::Result<::std::string::String>> + '_,
            >,
        > {
            $crate::cache::storage::StorageRead::list($to(self), dir)
        }
    };
    (@one $to:path, list_sized) => {
        fn list_sized(
            &self,
            dir: $crate::cache::layout::KeyDir,
        ) -> ::std::option::Option<
            ::std::io::Result<::std::vec::Vec<(::std::string::String, u64)>>,
        > {
            $crate::cache::storage::StorageRead::list_sized($to(self), dir)
        }
    };
    (@one $to:path, read_small) => {
        fn read_small(
            &self,
            key: &$crate::cache::layout::CacheKey,
            limit: u64,
        ) -> ::std::io::Result<::std::option::Option<::std::vec::Vec<u8>>> {
            $crate::cache::storage::StorageRead::read_small($to(self), key, limit)
        }
    };
    (@one $to:path, requests_in_flight) => {
        fn requests_in_flight(&self) -> usize {
            $crate::cache::storage::StorageRead::requests_in_flight($to(self))
        }
    };
    (@one $to:path, read_range) => {
        fn read_range(
            &self,
            key: &$crate::cache::layout::CacheKey,
            start: u64,
            len: u64,
        ) -> ::std::io::Result<::std::option::Option<$crate::cache::storage::RangeRead>> {
            $crate::cache::storage::StorageRead::read_range($to(self), key, start, len)
        }
    };

    // StorageWrite
    (@one $to:path, prepare) => {
        fn prepare(&self) -> ::std::io::Result<()> {
            $crate::cache::storage::StorageWrite::prepare($to(self))
        }
    };
    (@one $to:path, stage) => {
        fn stage(
            &self,
            dir: $crate::cache::layout::KeyDir,
        ) -> ::std::io::Result<::std::boxed::Box<dyn $crate::cache::storage::Staged>> {
            $crate::cache::storage::StorageWrite::stage($to(self), dir)
        }
    };
    (@one $to:path, writes_in_place) => {
        fn writes_in_place(&self) -> bool {
            $crate::cache::storage::StorageWrite::writes_in_place($to(self))
        }
    };
    (@one $to:path, stage_at) => {
        fn stage_at(
            &self,
            key: &$crate::cache::layout::CacheKey,
        ) -> ::std::io::Result<::std::boxed::Box<dyn $crate::cache::storage::Staged>> {
            $crate::cache::storage::StorageWrite::stage_at($to(self), key)
        }
    };
    (@one $to:path, put_if_absent) => {
        fn put_if_absent(
            &self,
            key: &$crate::cache::layout::CacheKey,
            data: &[u8],
        ) -> ::std::io::Result<bool> {
            $crate::cache::storage::StorageWrite::put_if_absent($to(self), key, data)
        }
    };
    (@one $to:path, put) => {
        fn put(&self, key: &$crate::cache::layout::CacheKey, data: &[u8]) -> ::std::io::Result<()> {
            $crate::cache::storage::StorageWrite::put($to(self), key, data)
        }
    };
    (@one $to:path, replace_if_unchanged) => {
        fn replace_if_unchanged(
            &self,
            key: &$crate::cache::layout::CacheKey,
            data: &[u8],
            expected: ::std::option::Option<&str>,
        ) -> ::std::io::Result<bool> {
            let to = $to(self);
            $crate::cache::storage::StorageWrite::replace_if_unchanged(to, key, data, expected)
        }
    };
    (@one $to:path, delete) => {
        fn delete(&self, key: &$crate::cache::layout::CacheKey) -> ::std::io::Result<bool> {
            $crate::cache::storage::StorageWrite::delete($to(self), key)
        }
    };
    (@one $to:path, barrier) => {
        fn barrier(&self) -> ::std::io::Result<()> {
            $crate::cache::storage::StorageWrite::barrier($to(self))
        }
    };
    (@one $to:path, lock) => {
        fn lock(
            &self,
            name: &str,
            exclusive: bool,
            wait: bool,
        ) -> ::std::io::Result<::std::option::Option<$crate::cache::storage::StorageLock>> {
            $crate::cache::storage::StorageWrite::lock($to(self), name, exclusive, wait)
        }
    };
    (@one $to:path, gc_lock) => {
        fn gc_lock(
            &self,
        ) -> ::std::io::Result<::std::option::Option<$crate::cache::storage::StorageLock>> {
            $crate::cache::storage::StorageWrite::gc_lock($to(self))
        }
    };
    (@one $to:path, gc_batch_lock) => {
        fn gc_batch_lock(
            &self,
            exclusive: bool,
        ) -> ::std::io::Result<$crate::cache::storage::StorageLock> {
            $crate::cache::storage::StorageWrite::gc_batch_lock($to(self), exclusive)
        }
    };
    (@one $to:path, lease) => {
        fn lease(
            &self,
        ) -> ::std::io::Result<::std::boxed::Box<dyn $crate::cache::storage::lease::Lease>> {
            $crate::cache::storage::StorageWrite::lease($to(self))
        }
    };
    (@one $to:path, live_leases) => {
        fn live_leases(
            &self,
            tidy: bool,
        ) -> ::std::io::Result<::std::vec::Vec<::std::vec::Vec<u8>>> {
            $crate::cache::storage::StorageWrite::live_leases($to(self), tidy)
        }
    };
    (@one $to:path, gc_roots) => {
        fn gc_roots(
            &self,
        ) -> ::std::io::Result<::std::vec::Vec<$crate::cache::storage::RootEntry>> {
            $crate::cache::storage::StorageWrite::gc_roots($to(self))
        }
    };
    (@one $to:path, clean_abandoned) => {
        fn clean_abandoned(&self) -> ::std::io::Result<()> {
            $crate::cache::storage::StorageWrite::clean_abandoned($to(self))
        }
    };
}
