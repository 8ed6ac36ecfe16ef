import { useEffect, useState } from 'preact/hooks';
import { api, ApiError } from './api';

/** GET `path` now and every `ms` (six times slower while the tab is hidden); the latest data and error. */
export function usePoll<T>(path: string, ms: number): { data: T | null; error: string } {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState('');
  useEffect(() => {
    let stop = false;
    let timer = 0;
    const load = async () => {
      try {
        const d = await api<T>('GET', path);
        if (!stop) {
          setData(d);
          setError('');
        }
      } catch (e) {
        if (!stop) setError((e as ApiError).message);
      }
      if (!stop) timer = window.setTimeout(load, document.hidden ? ms * 6 : ms);
    };
    load();
    return () => {
      stop = true;
      clearTimeout(timer);
    };
  }, [path, ms]);
  return { data, error };
}
